//! The unit tier of the CNI front-end: every command through the daemon's real router,
//! against the in-memory Neutron and the recording fake host. The same against the real
//! Neutron, kernel namespaces and the `kuryr-cni` binary is tests/cni_plugin.rs.

use serde_json::{json, Value};

use crate::names;
use crate::testkit::{Fault, TestDriver};

const CTR: &str = "3f0c0ffee0ddba11c0de5eed0fba5eba11ad5eedc0ffee0ddba11c0de5eed0f1";

/// Each container its own namespace.
fn ns(ctr: &str) -> String {
    format!("/run/netns/cni-{}", ctr.get(..8).unwrap_or(ctr))
}

/// A Neutron network `net1` with an IPv4 subnet (gateway, a host route, DNS).
async fn driver() -> (TestDriver, String, String) {
    let t = TestDriver::new("").await;
    let net = t
        .neutron
        .seed("networks", json!({"name": "net1", "mtu": 1450}));
    let net_id = net["id"].as_str().unwrap_or_default().to_string();
    let sub = t.neutron.seed(
        "subnets",
        json!({"network_id": net_id, "cidr": "10.20.0.0/24", "ip_version": 4,
            "gateway_ip": "10.20.0.1", "name": "sub1",
            "dns_nameservers": ["10.20.0.53"],
            "host_routes": [{"destination": "192.168.7.0/24", "nexthop": "10.20.0.254"}]}),
    );
    let sub_id = sub["id"].as_str().unwrap_or_default().to_string();
    (t, net_id, sub_id)
}

fn conf(extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "kuryr-test", "type": "kuryr-cni",
        "network": "net1"});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn call(command: &str, ctr: &str, args: &str, config: Value) -> Value {
    json!({"command": command, "container_id": ctr, "netns": ns(ctr), "ifname": "eth0",
        "args": args, "config": config})
}

fn ports(t: &TestDriver) -> Vec<Value> {
    t.neutron.all("ports")
}

#[tokio::test]
async fn add_makes_one_bound_tagged_port_wired_into_the_namespace_and_del_takes_all_away() {
    let (t, net_id, sub_id) = driver().await;
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    // Four requests: the port is tagged in its create (crash-safe: no untagged port).
    assert_eq!(
        t.take_requests(),
        vec!["GET networks", "GET subnets", "GET ports", "POST ports"]
    );
    let p = ports(&t);
    assert_eq!(p.len(), 1);
    let port = &p[0];
    assert_eq!(port["network_id"], json!(net_id));
    assert_eq!(port["device_id"], CTR);
    assert_eq!(port["binding:host_id"], crate::testkit::HOST);
    let tags: Vec<String> = serde_json::from_value(port["tags"].clone()).unwrap();
    assert_eq!(tags, names::cni_tags("eth0", "kuryr-test"));
    let ip = port["fixed_ips"][0]["ip_address"].as_str().unwrap();
    assert_eq!(port["fixed_ips"][0]["subnet_id"], json!(sub_id));
    // The result: host veth, then the container's interface in its namespace.
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"], ns(CTR));
    assert_eq!(
        r["interfaces"][1]["mac"],
        json!(port["mac_address"].as_str().unwrap().to_ascii_lowercase())
    );
    assert_eq!(r["ips"][0]["address"], json!(format!("{ip}/24")));
    assert_eq!(r["ips"][0]["gateway"], "10.20.0.1");
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(
        r["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.20.0.1"},
               {"dst": "192.168.7.0/24", "gw": "10.20.0.254"}])
    );
    assert_eq!(r["dns"]["nameservers"], json!(["10.20.0.53"]));
    let port_id = port["id"].as_str().unwrap();
    assert!(t
        .host
        .netns_links()
        .contains(&(ns(CTR), "eth0".to_string())));
    assert!(t.host.links().contains(&names::host_veth(port_id)));

    let (status, r) = t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
    assert_eq!((status, &r), (200, &Value::Null));
    assert!(ports(&t).is_empty());
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
    assert!(t.host.netns_links().is_empty());
    // DEL of what is gone already succeeds and asks Neutron one list only.
    t.take_requests();
    let (status, _) = t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200);
    assert_eq!(t.take_requests(), vec!["GET ports"]);
}

#[tokio::test]
async fn args_ip_and_mac_are_the_ports_and_an_address_off_the_subnet_is_refused() {
    let (t, _, _) = driver().await;
    let args = "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.20.0.77;MAC=02:00:00:aa:bb:cc";
    let (status, r) = t.cni(&call("ADD", CTR, args, conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    let p = &ports(&t)[0];
    assert_eq!(p["fixed_ips"][0]["ip_address"], "10.20.0.77");
    assert_eq!(p["mac_address"], "02:00:00:aa:bb:cc");
    assert_eq!(r["ips"][0]["address"], "10.20.0.77/24");

    let other = CTR.replace("3f0c", "4f0c");
    let (status, r) = t
        .cni(&call("ADD", &other, "IP=10.99.0.5", conf(json!({}))))
        .await;
    assert_eq!((status, r["code"].as_u64()), (400, Some(7)), "{r}");
    assert!(r["msg"].as_str().unwrap().contains("10.20.0.0/24"), "{r}");
    assert_eq!(ports(&t).len(), 1, "the refused ADD made a port");
}

#[tokio::test]
async fn a_failed_step_on_the_host_leaves_nothing_in_neutron_or_on_the_host() {
    let (t, _, _) = driver().await;
    t.host.fail("move_into_netns", 1);
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!((status, r["code"].as_u64()), (500, Some(101)), "{r}");
    assert_eq!(r["cniVersion"], "1.1.0");
    assert!(ports(&t).is_empty(), "port left: {:?}", ports(&t));
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
    // The same ADD again works.
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
}

#[tokio::test]
async fn an_add_whose_interface_name_is_taken_fails_and_leaves_that_interface() {
    let (t, _, _) = driver().await;
    t.host.put_netns_link(&ns(CTR), "eth0", "02:00:00:00:00:01");
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_ne!(status, 200, "{r}");
    assert!(
        r["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("already exists"),
        "{r}"
    );
    assert!(ports(&t).is_empty(), "port left: {:?}", ports(&t));
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
    assert!(
        t.host
            .netns_links()
            .contains(&(ns(CTR), "eth0".to_string())),
        "the interface that had the name was deleted"
    );
}

/// An ADD repeated without a DEL fails (the spec's rule: the interface exists) and leaves
/// the attachment the first one made as it was: same port, same interface.
#[tokio::test]
async fn an_add_repeated_without_del_fails_and_keeps_the_first_attachment() {
    let (t, _, _) = driver().await;
    let (status, first) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{first}");
    let before = ports(&t);
    let links = t.host.links();
    t.take_requests();
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_ne!(status, 200, "{r}");
    assert!(
        r["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("already exists"),
        "{r}"
    );
    let asked = t.take_requests();
    assert!(asked.iter().all(|r| r.starts_with("GET ")), "{asked:?}");
    assert_eq!(ports(&t), before);
    assert_eq!(t.host.links(), links);
    let (status, v) = t.cni(&call("CHECK", CTR, "", conf(json!({})))).await;
    assert_eq!(
        (status, &v),
        (200, &Value::Null),
        "CHECK after the second ADD"
    );
}

/// A DEL after the attachment's port was deleted in Neutron by hand still takes its veth
/// and the container's interface away.
#[tokio::test]
async fn del_of_an_attachment_whose_port_was_deleted_by_hand_removes_its_veth() {
    let (t, _, _) = driver().await;
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    let id = ports(&t)[0]["id"].as_str().unwrap_or_default().to_string();
    t.driver
        .neutron
        .delete::<crate::neutron::Port>(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _) = t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200);
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
    assert!(
        t.host.netns_links().is_empty(),
        "{:?}",
        t.host.netns_links()
    );
}

/// A runtime that gives up on an ADD (its plugin killed, the socket closed) does not cut
/// the ADD off half-way: it runs to its end, here a wired attachment that the runtime's
/// DEL then takes away, never a port without its interfaces.
#[tokio::test(start_paused = true)]
async fn an_add_whose_caller_goes_away_still_runs_to_its_end() {
    let (t, _, _) = driver().await;
    // The first read of the network hangs (a silent Neutron); its retry is answered.
    t.neutron.inject(Fault {
        status: 1,
        ..Fault::once("GET", "/v2.0/networks", 0)
    });
    let add = call("ADD", CTR, "", conf(json!({})));
    let gave_up = tokio::time::timeout(std::time::Duration::from_secs(1), t.cni(&add)).await;
    assert!(gave_up.is_err(), "the ADD answered before Neutron did");
    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
    let p = ports(&t);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(t
        .host
        .netns_links()
        .contains(&(ns(CTR), "eth0".to_string())));
    let (status, _) = t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200);
    assert!(ports(&t).is_empty());
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
}

#[tokio::test]
async fn bad_config_and_environment_get_the_specs_codes_and_change_nothing() {
    let (t, _, _) = driver().await;
    let cases = [
        (call("ADD", CTR, "", conf(json!({"network": "nope"}))), 7),
        (call("ADD", CTR, "", conf(json!({"network": ""}))), 7),
        (
            call("ADD", CTR, "", conf(json!({"cniVersion": "9.9.9"}))),
            1,
        ),
        (call("ADD", CTR, "", conf(json!({"subnet": "nope"}))), 7),
        (call("ADD", CTR, "", conf(json!({"mtu": 20}))), 7),
        (call("ADD", CTR, "BOGUS=1", conf(json!({}))), 4),
        (call("ADD", "-bad id", "", conf(json!({}))), 4),
        (call("ADD", CTR, "MAC=zz", conf(json!({}))), 4),
        (call("PUT", CTR, "", conf(json!({}))), 4),
        (call("GC", CTR, "", conf(json!({}))), 7),
        (json!({"command": "ADD"}), 6),
    ];
    let mut bad_ifname = call("ADD", CTR, "", conf(json!({})));
    bad_ifname["ifname"] = json!("a/b");
    let mut bad_netns = call("ADD", CTR, "", conf(json!({})));
    bad_netns["netns"] = json!("relative/ns");
    let more = [(bad_ifname, 4), (bad_netns, 4)];
    for (c, code) in cases.iter().chain(more.iter()) {
        let (status, r) = t.cni(c).await;
        assert_eq!(r["code"].as_u64(), Some(*code), "{c}: {r}");
        assert_eq!(status, 400, "{c}: {r}");
        assert!(!r["msg"].as_str().unwrap_or("").is_empty(), "{r}");
    }
    assert!(ports(&t).is_empty());
    assert!(t.host.calls().iter().all(|c| !c.starts_with("plug")));
}

#[tokio::test]
async fn check_passes_on_a_wired_attachment_and_fails_saying_why_otherwise() {
    let (t, _, _) = driver().await;
    let (_, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    let with_prev = conf(json!({"prevResult": r}));
    let (status, v) = t.cni(&call("CHECK", CTR, "", with_prev.clone())).await;
    assert_eq!(status, 200, "{v}");
    // prevResult names an address the interface does not have.
    let mut wrong = with_prev.clone();
    wrong["prevResult"]["ips"][0]["address"] = json!("10.20.0.250/24");
    let (status, v) = t.cni(&call("CHECK", CTR, "", wrong)).await;
    assert_eq!(status, 500, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("10.20.0.250"), "{v}");
    t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
    let (status, v) = t.cni(&call("CHECK", CTR, "", with_prev)).await;
    assert_eq!((status, v["code"].as_u64()), (400, Some(7)), "{v}");
    let (_, v) = t
        .cni(&call(
            "CHECK",
            CTR,
            "",
            conf(json!({"cniVersion": "0.3.1"})),
        ))
        .await;
    assert_eq!(v["code"], 1);
}

#[tokio::test]
async fn gc_removes_exactly_the_attachments_not_listed_as_valid() {
    let (t, _, _) = driver().await;
    let keep = CTR.replace("3f0c", "5f0c");
    for c in [CTR, keep.as_str()] {
        let (status, r) = t.cni(&call("ADD", c, "", conf(json!({})))).await;
        assert_eq!(status, 200, "{r}");
    }
    // Another config's attachment on the same Neutron network is not this GC's.
    let other = CTR.replace("3f0c", "6f0c");
    t.cni(&call(
        "ADD",
        &other,
        "",
        conf(json!({"name": "other-conf"})),
    ))
    .await;
    assert_eq!(ports(&t).len(), 3);
    let valid =
        conf(json!({"cni.dev/valid-attachments": [{"containerID": keep, "ifname": "eth0"}]}));
    let (status, r) = t.cni(&call("GC", "", "", valid)).await;
    assert_eq!(status, 200, "{r}");
    let left: Vec<String> = ports(&t)
        .iter()
        .map(|p| p["device_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&keep) && left.contains(&other), "{left:?}");
}

#[tokio::test]
async fn an_add_interrupted_after_its_port_is_redone_with_one_port() {
    let (t, net_id, _) = driver().await;
    // What a kuryr killed mid-ADD leaves: the tagged port, no veth.
    let left = t.neutron.seed(
        "ports",
        json!({"network_id": net_id, "device_id": CTR, "binding:host_id": crate::testkit::HOST,
            "tags": names::cni_tags("eth0", "kuryr-test")}),
    );
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    let p = ports(&t);
    assert_eq!(p.len(), 1);
    assert_ne!(p[0]["id"], left["id"]);
}

#[tokio::test]
async fn status_is_ok_while_neutron_answers_and_50_when_it_does_not() {
    let (t, _, _) = driver().await;
    let (status, v) = t.cni(&call("STATUS", "", "", conf(json!({})))).await;
    assert_eq!((status, &v), (200, &Value::Null));
    t.neutron.inject(crate::testkit::Fault {
        times: 10,
        ..crate::testkit::Fault::once("GET", "/v2.0/networks", 503)
    });
    let (status, v) = t.cni(&call("STATUS", "", "", conf(json!({})))).await;
    assert_eq!((status, v["code"].as_u64()), (503, Some(50)), "{v}");
}

#[tokio::test]
async fn kuryr_gc_keeps_wired_attachments_and_takes_those_whose_veth_the_kernel_removed() {
    let (t, _, _) = driver().await;
    let gone = CTR.replace("3f0c", "7f0c");
    for c in [CTR, gone.as_str()] {
        let (status, r) = t.cni(&call("ADD", c, "", conf(json!({})))).await;
        assert_eq!(status, 200, "{r}");
    }
    // The second container's namespace ended without a DEL: its veth went with it.
    let gone_port = ports(&t)
        .into_iter()
        .find(|p| p["device_id"] == json!(gone))
        .unwrap();
    let gone_id = gone_port["id"].as_str().unwrap().to_string();
    t.host.clear_calls();
    t.driver
        .plumbing()
        .delete_link(&names::host_veth(&gone_id))
        .await
        .unwrap();
    // Docker knows neither container: only the veth decides.
    let live = crate::commands::gc::Live::default();
    let leaks = t.gc_leaks(&live).await;
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert!(
        matches!(&leaks[0], crate::commands::gc::Leak::Port { id, .. } if *id == gone_id),
        "{leaks:?}"
    );
}

#[tokio::test]
async fn groups_come_from_the_config_else_from_the_networks_tags() {
    let (t, net_id, _) = driver().await;
    let web = t.neutron.seed("security-groups", json!({"name": "web"}));
    let db = t.neutron.seed("security-groups", json!({"name": "db"}));
    t.neutron.set(
        "networks",
        &net_id,
        json!({"tags": names::sg_tags(&[web["id"].as_str().unwrap().to_string()])}),
    );
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(ports(&t)[0]["security_groups"], json!([web["id"]]));
    let other = CTR.replace("3f0c", "8f0c");
    let (status, r) = t
        .cni(&call(
            "ADD",
            &other,
            "",
            conf(json!({"securityGroups": ["db"]})),
        ))
        .await;
    assert_eq!(status, 200, "{r}");
    let p = ports(&t)
        .into_iter()
        .find(|p| p["device_id"] == json!(other))
        .unwrap();
    assert_eq!(p["security_groups"], json!([db["id"]]));
    let (status, r) = t
        .cni(&call(
            "ADD",
            &CTR.replace("3f0c", "9f0c"),
            "",
            conf(json!({"securityGroups": ["nope"]})),
        ))
        .await;
    assert_eq!((status, r["code"].as_u64()), (400, Some(7)), "{r}");
}

#[tokio::test]
async fn a_cidr_makes_the_network_and_subnet_once_and_later_adds_reuse_them() {
    let t = TestDriver::new("").await;
    let c = conf(json!({"network": "made-by-cni", "cidr": "10.30.0.9/24"}));
    for ctr in [CTR.to_string(), CTR.replace("3f0c", "af0c")] {
        let (status, r) = t.cni(&call("ADD", &ctr, "", c.clone())).await;
        assert_eq!(status, 200, "{r}");
        assert!(
            r["ips"][0]["address"]
                .as_str()
                .unwrap()
                .starts_with("10.30.0."),
            "{r}"
        );
    }
    assert_eq!(t.neutron.count("networks"), 1);
    assert_eq!(t.neutron.count("subnets"), 1);
    let net = &t.neutron.all("networks")[0];
    assert_eq!(net["name"], "made-by-cni");
    assert_eq!(net["tags"], json!([names::TAG_CNI_MADE]));
    assert_eq!(t.neutron.all("subnets")[0]["cidr"], "10.30.0.0/24");
    // A bad CIDR is the config's fault.
    let (status, r) = t
        .cni(&call("ADD", CTR, "", conf(json!({"cidr": "10.30.0.0/33"}))))
        .await;
    assert_eq!((status, r["code"].as_u64()), (400, Some(7)), "{r}");
}

/// A network an ADD made goes again when its subnet or its tags are refused: the config's
/// mistake leaves Neutron as it was, and the next ADD makes both.
#[tokio::test]
async fn a_network_made_for_an_add_that_then_fails_is_deleted() {
    let t = TestDriver::new("").await;
    let c = conf(json!({"network": "made-by-cni", "cidr": "10.30.0.0/24"}));
    for (method, path) in [("POST", "/v2.0/subnets"), ("PUT", "/v2.0/networks/")] {
        t.neutron.inject(Fault::once(method, path, 400));
        let (status, r) = t.cni(&call("ADD", CTR, "", c.clone())).await;
        assert_ne!(status, 200, "{method} {path} refused: {r}");
        assert_eq!(t.neutron.count("networks"), 0, "after {method} {path}");
        assert_eq!(t.neutron.count("ports"), 0);
    }
    // A group, QoS policy or floating network that Neutron does not have: refused before
    // the network is made.
    for wrong in [
        json!({"securityGroups": ["no-such-group"]}),
        json!({"qosPolicy": "no-such-policy"}),
        json!({"floatingNetwork": "no-such-net"}),
    ] {
        let mut c = c.clone();
        if let (Some(c), Some(w)) = (c.as_object_mut(), wrong.as_object()) {
            c.extend(w.clone());
        }
        let (status, r) = t.cni(&call("ADD", CTR, "", c)).await;
        assert_eq!(status, 400, "{wrong}: {r}");
        assert_eq!(t.neutron.count("networks"), 0, "{wrong}");
    }
    let (status, r) = t.cni(&call("ADD", CTR, "", c)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        t.neutron.all("networks")[0]["tags"],
        json!([names::TAG_CNI_MADE])
    );
}

#[tokio::test]
async fn a_subnetpool_gives_the_network_its_subnet() {
    let t = TestDriver::new("").await;
    t.neutron.seed(
        "subnetpools",
        json!({"name": "cni-pool", "prefixes": ["10.31.0.0/16"], "default_prefixlen": 24, "ip_version": 4}),
    );
    let c = conf(json!({"network": "pooled", "subnetpool": "cni-pool"}));
    let (status, r) = t.cni(&call("ADD", CTR, "", c)).await;
    assert_eq!(status, 200, "{r}");
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.31."),
        "{r}"
    );
    let (status, r) = t
        .cni(&call("ADD", CTR, "", conf(json!({"subnetpool": "nope"}))))
        .await;
    assert_eq!((status, r["code"].as_u64()), (400, Some(7)), "{r}");
}

#[tokio::test]
async fn a_floating_network_gives_the_attachment_a_floating_ip_released_at_del() {
    let (t, net_id, _) = driver().await;
    let public = t.neutron.seed(
        "networks",
        json!({"name": "public", "router:external": true}),
    );
    // Not external: refused before any port.
    let (status, r) = t
        .cni(&call(
            "ADD",
            CTR,
            "",
            conf(json!({"floatingNetwork": "net1"})),
        ))
        .await;
    assert_eq!(status, 400, "{r}");
    assert!(ports(&t).is_empty());
    let (status, r) = t
        .cni(&call(
            "ADD",
            CTR,
            "",
            conf(json!({"floatingNetwork": "public"})),
        ))
        .await;
    assert_eq!(status, 200, "{r}");
    let port = ports(&t).remove(0);
    let fips = t.neutron.all("floatingips");
    assert_eq!(fips.len(), 1, "{fips:?}");
    assert_eq!(fips[0]["port_id"], port["id"]);
    assert_eq!(fips[0]["floating_network_id"], public["id"]);
    assert!(fips[0]["description"]
        .as_str()
        .is_some_and(|d| d.starts_with(names::FIP_DESCRIPTION_PREFIX)));
    let (status, r) = t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    assert!(t.neutron.all("floatingips").is_empty(), "released at DEL");
    assert!(ports(&t).is_empty());
    // A Docker network on the same Neutron network that asked for floating IPs: its
    // external network is the attachment's too.
    t.neutron.set(
        "networks",
        &net_id,
        json!({"tags": [format!("{}{}", names::TAG_FIP_NET, public["id"].as_str().unwrap())]}),
    );
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(t.neutron.all("floatingips").len(), 1);
}

/// A driver with a port pool of `size` on `net1`, the pool filled by a first ADD (which
/// also resolves the config): the pool's ports, as Neutron has them.
async fn pooled(size: usize) -> (TestDriver, Vec<String>) {
    let t = TestDriver::new(&format!("[DEFAULT]\nport_pool_size = {size}\n")).await;
    let net = t
        .neutron
        .seed("networks", json!({"name": "net1", "mtu": 1450}));
    t.neutron.seed(
        "subnets",
        json!({"network_id": net["id"], "cidr": "10.20.0.0/24", "ip_version": 4,
            "gateway_ip": "10.20.0.1", "name": "sub1"}),
    );
    let first = CTR.replace("3f0c", "0f0c");
    let (status, r) = t.cni(&call("ADD", &first, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    let mut pool = Vec::new();
    for _ in 0..300 {
        pool = pool_ports(&t);
        if pool.len() == size {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(pool.len(), size, "the pool never filled");
    t.driver.background.flush().await;
    t.take_requests();
    (t, pool)
}

fn pool_ports(t: &TestDriver) -> Vec<String> {
    ports(t)
        .iter()
        .filter(|p| p["name"] == crate::driver::port_pool::POOL_PORT_NAME)
        .map(|p| p["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn port_by_id(t: &TestDriver, id: &str) -> Value {
    ports(t)
        .into_iter()
        .find(|p| p["id"] == id)
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_pooled_add_asks_neutron_nothing_before_it_answers_and_its_port_becomes_the_attachments()
{
    let (t, pool) = pooled(3).await;
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(t.take_requests(), Vec::<String>::new());
    // The answer is the pool port's, wired into the namespace.
    let taken = pool
        .iter()
        .find(|id| {
            let p = port_by_id(&t, id);
            r["interfaces"][1]["mac"]
                == json!(p["mac_address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase())
        })
        .cloned()
        .expect("the ADD's MAC is a pool port's");
    assert!(t.host.links().contains(&names::host_veth(&taken)));
    // After the answer, the port becomes the attachment's, as a port ADD made would be.
    t.driver.background.flush().await;
    let p = port_by_id(&t, &taken);
    assert_eq!(p["device_id"], CTR);
    assert_eq!(p["name"], names::cni_port_name(CTR, "eth0"));
    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap();
    assert_eq!(tags, names::cni_tags("eth0", "kuryr-test"));
    // CHECK and DEL find it by its tags now.
    let (status, v) = t.cni(&call("CHECK", CTR, "", conf(json!({})))).await;
    assert_eq!((status, &v), (200, &Value::Null), "CHECK");
    let (status, _) = t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200);
    // Its veth went (the pool may plug the port again at once, for itself).
    assert!(t
        .host
        .calls()
        .contains(&format!("unplug {}", names::host_veth(&taken))));
    assert!(!t
        .host
        .netns_links()
        .contains(&(ns(CTR), "eth0".to_string())));
    let alias = t.host.alias(&names::host_veth(&taken)).unwrap_or_default();
    assert!(!alias.contains(CTR), "{alias}");
    // The port goes back to the pool (or, the pool full, is deleted) after the answer.
    t.driver.background.flush().await;
    assert_free_or_gone(&t, &taken);
}

/// A pooled attachment's DEL answers once its interfaces are gone: giving the port back
/// (or deleting it) is Neutron's time, not the runtime's. Here Neutron never answers
/// those requests, and the DEL still succeeds with that work pending.
#[tokio::test]
async fn a_pooled_del_answers_without_waiting_for_neutron() {
    let (t, _) = pooled(3).await;
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    t.driver.background.flush().await;
    for method in ["PUT", "DELETE"] {
        t.neutron.inject(Fault {
            status: 1,
            times: 10,
            ..Fault::once(method, "/v2.0/ports", 0)
        });
    }
    let (status, v) = t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
    assert_eq!((status, &v), (200, &Value::Null), "DEL");
    assert!(t.driver.background.pending() >= 1);
    assert!(!t
        .host
        .netns_links()
        .contains(&(ns(CTR), "eth0".to_string())));
}

/// The port is deleted, or a free pool port again: none of the attachment's name,
/// device or tags stays.
fn assert_free_or_gone(t: &TestDriver, id: &str) {
    let p = port_by_id(t, id);
    if p != Value::Null {
        assert_eq!(p["name"], crate::driver::port_pool::POOL_PORT_NAME, "{p}");
        assert_eq!(p["device_id"], "", "{p}");
        assert_eq!(p["tags"], json!([names::TAG_KURYR_PORT]), "{p}");
    }
}

#[tokio::test]
async fn check_and_del_right_after_a_pooled_add_find_its_port_by_the_veth() {
    let (t, pool) = pooled(3).await;
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    // Before the bookkeeping: the port is still a pool port in Neutron.
    let (status, v) = t.cni(&call("CHECK", CTR, "", conf(json!({})))).await;
    assert_eq!((status, &v), (200, &Value::Null), "CHECK");
    let (status, _) = t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200);
    t.driver.background.flush().await;
    // The taken port is free or gone, with its veth; no bookkeeping came back to life;
    // the other pool ports stay free.
    for id in &pool {
        assert_free_or_gone(&t, id);
    }
    let gone: Vec<&String> = pool
        .iter()
        .filter(|id| port_by_id(&t, id) == Value::Null)
        .collect();
    assert!(gone.len() <= 1, "{gone:?}");
    // A pool port keeps a veth only as the pool's, plugged ahead: none is the container's.
    let ahead = Some(crate::host::PLUGGED_AHEAD.to_string());
    for id in &pool {
        let veth = names::host_veth(id);
        if t.host.links().contains(&veth) {
            assert_eq!(t.host.alias(&veth), ahead, "{veth}");
            assert_ne!(port_by_id(&t, id), Value::Null, "{veth} outlived its port");
        }
    }
    assert!(!t
        .host
        .netns_links()
        .contains(&(ns(CTR), "eth0".to_string())));
}

#[tokio::test]
async fn a_pooled_add_that_fails_on_the_host_leaves_nothing_and_the_next_resolves_again() {
    let (t, pool) = pooled(2).await;
    t.host.fail("move_into_netns", 1);
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 500, "{r}");
    assert!(t.host.netns_links().iter().all(|(n, _)| *n != ns(CTR)));
    assert!(ports(&t).iter().all(|p| p["device_id"] != CTR));
    // The failed ADD's target is not trusted: the next ADD reads the network again.
    t.take_requests();
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    let asked = t.take_requests();
    assert!(asked.contains(&"GET networks".to_string()), "{asked:?}");
    assert!(pool.len() == 2);
}

/// A pool port taken by an ADD that fails before it is wired goes back to the pool (or
/// is deleted beyond its size): none stays in Neutron that the pool no longer knows.
#[tokio::test]
async fn a_pool_port_taken_by_an_add_that_fails_early_goes_back_to_the_pool() {
    let (t, _) = pooled(1).await;
    let net_id = ports(&t)[0]["network_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    t.host.fail("veth_of_endpoint", 1);
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_ne!(status, 200, "{r}");
    for _ in 0..300 {
        t.driver.background.flush().await;
        if pool_ports(&t).len() == t.driver.port_pool.available(&net_id) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        pool_ports(&t).len(),
        t.driver.port_pool.available(&net_id),
        "pool ports in Neutron against the pool's"
    );
}

/// The same with the pool: the repeated ADD gives the pool port it took back and fails;
/// the first ADD's port and interface stay.
#[tokio::test]
async fn a_pooled_add_repeated_without_del_fails_and_keeps_the_first_attachment() {
    let (t, _) = pooled(3).await;
    let (status, first) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{first}");
    // Again before the first one's bookkeeping: its port is known by its veth only.
    t.take_requests();
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_ne!(status, 200, "{r}");
    // No port made for it and deleted again (the pool may refill beside it).
    let asked = t.take_requests();
    assert!(!asked.contains(&"DELETE ports".to_string()), "{asked:?}");
    t.driver.background.flush().await;
    let mine = |t: &TestDriver| -> Vec<Value> {
        ports(t)
            .into_iter()
            .filter(|p| p["device_id"] == CTR)
            .collect()
    };
    let before = mine(&t);
    assert_eq!(before.len(), 1);
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_ne!(status, 200, "{r}");
    t.driver.background.flush().await;
    assert_eq!(mine(&t), before);
    let (status, v) = t.cni(&call("CHECK", CTR, "", conf(json!({})))).await;
    assert_eq!(
        (status, &v),
        (200, &Value::Null),
        "CHECK after the second ADD"
    );
}

/// A second DEL of an attachment whose port the first gave back to the pool leaves the
/// pool as it is: the port is not unplugged again, nor in the pool twice.
#[tokio::test]
async fn a_port_given_back_twice_has_one_place_in_the_pool() {
    let (t, _) = pooled(3).await;
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    t.driver.background.flush().await;
    let mine = ports(&t)
        .into_iter()
        .find(|p| p["device_id"] == CTR)
        .unwrap_or_default();
    let (id, net_id) = (
        mine["id"].as_str().unwrap_or_default().to_string(),
        mine["network_id"].as_str().unwrap_or_default().to_string(),
    );
    for _ in 0..2 {
        let (status, _) = t.cni(&call("DEL", CTR, "", conf(json!({})))).await;
        assert_eq!(status, 200);
    }
    t.driver.background.flush().await;
    assert_free_or_gone(&t, &id);
    let before = t.driver.port_pool.available(&net_id);
    assert_eq!(pool_ports(&t).len(), before);
    // A free port given back again, as a DEL racing the first one's give-back would.
    let free = pool_ports(&t).first().cloned().unwrap_or_default();
    let again: crate::neutron::Port = serde_json::from_value(port_by_id(&t, &free))
        .unwrap_or_else(|e| panic!("pool port {free}: {e}"));
    t.driver.port_pool.give_back(&t.driver.neutron, again).await;
    assert_eq!(t.driver.port_pool.available(&net_id), before);
    assert_eq!(pool_ports(&t).len(), before, "a free port was deleted");
    assert_eq!(
        t.host.alias(&names::host_veth(&free)).as_deref(),
        Some(crate::host::PLUGGED_AHEAD),
        "the pool's veth of the port"
    );
}

#[tokio::test]
async fn an_attachment_with_its_own_address_or_groups_gets_a_port_of_its_own() {
    let (t, pool) = pooled(2).await;
    let (status, r) = t
        .cni(&call("ADD", CTR, "IP=10.20.0.77", conf(json!({}))))
        .await;
    assert_eq!(status, 200, "{r}");
    assert!(t.take_requests().contains(&"POST ports".to_string()));
    let mine: Vec<Value> = ports(&t)
        .into_iter()
        .filter(|p| p["device_id"] == CTR)
        .collect();
    assert_eq!(mine.len(), 1);
    assert!(!pool.contains(&mine[0]["id"].as_str().unwrap_or_default().to_string()));
    assert_eq!(mine[0]["fixed_ips"][0]["ip_address"], "10.20.0.77");
    // Marked its own, so DEL does not hand its address to the next container by the pool.
    let tags: Vec<String> = serde_json::from_value(mine[0]["tags"].clone()).unwrap_or_default();
    assert!(tags.iter().any(|t| t == names::TAG_PORT_OWN), "{tags:?}");
    let id = mine[0]["id"].as_str().unwrap_or_default().to_string();
    let (status, _) = t
        .cni(&call("DEL", CTR, "IP=10.20.0.77", conf(json!({}))))
        .await;
    assert_eq!(status, 200);
    t.driver.background.flush().await;
    assert_eq!(port_by_id(&t, &id), Value::Null, "the port is deleted");
}

#[tokio::test]
async fn later_adds_of_a_config_read_nothing_of_it_again() {
    let (t, _, _) = driver().await;
    let (status, r) = t.cni(&call("ADD", CTR, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    t.take_requests();
    let other = CTR.replace("3f0c", "5f0c");
    let (status, r) = t.cni(&call("ADD", &other, "", conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(t.take_requests(), vec!["GET ports", "POST ports"]);
    // Another config (another subnet named) is resolved on its own.
    let third = CTR.replace("3f0c", "6f0c");
    let (status, r) = t
        .cni(&call("ADD", &third, "", conf(json!({"subnet": "sub1"}))))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        t.take_requests(),
        vec!["GET networks", "GET subnets", "GET ports", "POST ports"]
    );
}

/// What containerd's CRI sends a plugin for a pod's sandbox.
const POD_ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d4f;K8S_POD_INFRA_CONTAINER_ID=3f0c;K8S_POD_UID=9a1e";

#[tokio::test]
async fn a_pods_port_is_described_by_the_pods_namespace_and_name_pooled_or_not() {
    let (t, _, _) = driver().await;
    let (status, r) = t.cni(&call("ADD", CTR, POD_ARGS, conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(ports(&t)[0]["description"], "kubernetes pod shop/web-7d4f");

    let (t, pool) = pooled(2).await;
    let (status, r) = t.cni(&call("ADD", CTR, POD_ARGS, conf(json!({})))).await;
    assert_eq!(status, 200, "{r}");
    t.driver.background.flush().await;
    let described: Vec<Value> = pool
        .iter()
        .map(|id| port_by_id(&t, id))
        .filter(|p| p["device_id"] == CTR)
        .collect();
    assert_eq!(described.len(), 1, "{:?}", ports(&t));
    assert_eq!(described[0]["description"], "kubernetes pod shop/web-7d4f");
}
