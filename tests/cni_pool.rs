//! kuryr-cni on the port pool (`port_pool_size`), against a real `kuryr serve`, the real
//! Neutron and real network namespaces. A binary of its own: the pool's attachments
//! would show in the host-wide counts of tests/cni_plugin.rs's tests running beside it.

mod common;

use common::cni::{cni, conf, env, pings, TestNet};
use common::{Kuryr, Netns};
use serde_json::{json, Value};

/// With `port_pool_size`, an ADD takes a port the pool made before it (bound to this
/// host already, so the ADD asks Neutron nothing: src/cni/tests.rs counts the requests),
/// the port becomes the attachment's after the answer, and a DEL right after the ADD,
/// before that, still takes it away. A DEL gives its port back to the pool (or deletes
/// it) after the answer: what stays is the pool.
#[tokio::test]
async fn with_a_port_pool_adds_take_pool_ports_and_dels_leave_only_the_pool() {
    let mut k = Kuryr::private().extra("port_pool_size = 3").start();
    let net = TestNet::new("10.253.66.0/24", "10.253.66.1").await;
    let (a, b, c_ns) = (Netns::new(), Netns::new(), Netns::new());
    let (ca, cb, cc) = (
        common::unique("ctr-pa-"),
        common::unique("ctr-pb-"),
        common::unique("ctr-pc-"),
    );
    // A config name of its own: a CNI GC of another test's config never takes these.
    let c = conf(&k, &net.name, json!({"name": "kuryr-it-pool"}));
    let pool_name = kuryr::driver::port_pool::POOL_PORT_NAME;

    // The first ADD resolves the config and fills the pool behind it.
    let (code, ra) = cni(&env("ADD", &ca, &a.path()), &c);
    assert_eq!(code, 0, "ADD: {ra}\n{}", k.log_text());
    let mut pool = Vec::new();
    for _ in 0..120 {
        pool = net.ports().await;
        pool.retain(|p| p.name == pool_name && p.vif_type.is_bound());
        if pool.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(pool.len(), 3, "the pool never filled\n{}", k.log_text());

    let (code, rb) = cni(&env("ADD", &cb, &b.path()), &c);
    assert_eq!(code, 0, "pooled ADD: {rb}\n{}", k.log_text());
    let mac_b = rb["interfaces"][1]["mac"].as_str().unwrap().to_string();
    let taken = pool
        .iter()
        .find(|p| p.mac_address.eq_ignore_ascii_case(&mac_b))
        .unwrap_or_else(|| panic!("b's MAC {mac_b} is no pool port's: {pool:?}"))
        .id
        .clone();
    let ip_b = rb["ips"][0]["address"].as_str().unwrap();
    let ip_b = ip_b.split('/').next().unwrap().to_string();
    assert!(
        pings(&a, &ip_b),
        "a cannot reach b on a pool port\n{}",
        k.log_text()
    );
    // After the answer the pool port becomes b's.
    let mut port_b = None;
    for _ in 0..40 {
        port_b = net.ports().await.into_iter().find(|p| p.id == taken);
        // The port's update, then its tags: both written.
        if port_b
            .as_ref()
            .is_some_and(|p| p.device_id == cb && p.tags.iter().any(|t| t == kuryr::names::TAG_CNI))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let port_b = port_b.expect("b's port is gone");
    assert_eq!(port_b.device_id, cb);
    assert_eq!(port_b.name, kuryr::names::cni_port_name(&cb, "eth0"));
    assert!(
        port_b.tags.iter().any(|t| t == kuryr::names::TAG_CNI),
        "{port_b:?}"
    );
    let (code, v) = cni(&env("CHECK", &cb, &b.path()), &c);
    assert_eq!((code, &v), (0, &Value::Null), "CHECK");

    // c: DEL at once after its ADD, whether or not its bookkeeping is written yet.
    let (code, rc) = cni(&env("ADD", &cc, &c_ns.path()), &c);
    assert_eq!(code, 0, "ADD c: {rc}\n{}", k.log_text());
    let (code, v) = cni(&env("DEL", &cc, &c_ns.path()), &c);
    assert_eq!((code, &v), (0, &Value::Null), "DEL c\n{}", k.log_text());

    for (ctr, ns) in [(&ca, &a), (&cb, &b)] {
        let (code, v) = cni(&env("DEL", ctr, &ns.path()), &c);
        assert_eq!((code, &v), (0, &Value::Null), "DEL");
    }
    // What stays is the pool: free ports, no container's, and no veth of a taken one.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let left = net.ports().await;
    for p in &left {
        assert!(
            p.name == pool_name && p.device_id.is_empty(),
            "left: {p:?}\n{}",
            k.log_text()
        );
    }
    // b's port went back to the pool (a free pool port, checked above), plugged ahead
    // again, or was deleted with its veth: its veth is no container's.
    let veth_b = kuryr::names::host_veth(&taken);
    if let Some((alias, _)) = link_alias_and_index(&veth_b) {
        assert_eq!(alias, "kuryr:pool", "{veth_b}");
        assert!(
            left.iter().any(|p| p.id == taken),
            "{veth_b} outlived its port"
        );
    }
    k.stop();
    remove_with_pool_veths(net).await;
}

/// kuryr is gone: the pool's veths (plugged ahead) go by hand, with the network.
async fn remove_with_pool_veths(net: TestNet) {
    for p in net.ports().await {
        let veth = kuryr::names::host_veth(&p.id);
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &veth])
            .status();
        if common::backend() == "ovn" {
            let rundir = std::env::var("KURYR_TEST_OVS_RUNDIR").unwrap_or_default();
            common::ovs::vsctl(&rundir, &["--if-exists", "del-port", &veth]);
        }
    }
    net.remove().await;
}

/// The alias of host interface `ifname` and its index, if it exists.
fn link_alias_and_index(ifname: &str) -> Option<(String, String)> {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{ifname}/{f}")).ok();
    Some((
        read("ifalias")?.trim().to_string(),
        read("ifindex")?.trim().to_string(),
    ))
}

/// The pool plugs its ports ahead (their veths bound here, so
/// the agent or ovn-controller filters them and reports them ACTIVE before any ADD); a
/// pooled ADD takes one as it is: the host veth stays the one plugged before the ADD (the
/// datapath port is not made again), its container end is moved into the namespace, and
/// the attachment pings.
#[tokio::test]
async fn a_secure_pool_hands_its_plugged_veths_to_adds() {
    let mut k = Kuryr::private()
        .extra("port_pool_size = 2\n[neutron]\nvif_plugging_is_fatal = true\nvif_plugging_timeout = 30\n")
        .start();
    let net = TestNet::new("10.253.67.0/24", "10.253.67.1").await;
    let (a, b) = (Netns::new(), Netns::new());
    let (ca, cb) = (common::unique("ctr-sa-"), common::unique("ctr-sb-"));
    let c = conf(&k, &net.name, json!({"name": "kuryr-it-pool-ahead"}));
    let pool_name = kuryr::driver::port_pool::POOL_PORT_NAME;
    let veth = |id: &str| kuryr::names::host_veth(id);

    // The first ADD resolves the config and fills the pool behind it, plugged ahead.
    let (code, ra) = cni(&env("ADD", &ca, &a.path()), &c);
    assert_eq!(code, 0, "ADD: {ra}\n{}", k.log_text());
    let mut pool = Vec::new();
    for _ in 0..120 {
        pool = net.ports().await;
        pool.retain(|p| {
            p.name == pool_name
                && p.status == "ACTIVE"
                && link_alias_and_index(&veth(&p.id)).is_some_and(|(a, _)| a == "kuryr:pool")
        });
        if pool.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        pool.len(),
        2,
        "the pool never held 2 ACTIVE ports plugged ahead\n{}",
        k.log_text()
    );
    let index_before: Vec<(String, String)> = pool
        .iter()
        .filter_map(|p| Some((p.id.to_string(), link_alias_and_index(&veth(&p.id))?.1)))
        .collect();

    let (code, rb) = cni(&env("ADD", &cb, &b.path()), &c);
    assert_eq!(code, 0, "pooled ADD: {rb}\n{}", k.log_text());
    let mac_b = rb["interfaces"][1]["mac"].as_str().unwrap().to_string();
    let taken = pool
        .iter()
        .find(|p| p.mac_address.eq_ignore_ascii_case(&mac_b))
        .unwrap_or_else(|| panic!("b's MAC {mac_b} is no pool port's: {pool:?}"))
        .id
        .to_string();
    let (alias, index) = link_alias_and_index(&veth(&taken)).expect("b's host veth is gone");
    assert_ne!(
        alias, "kuryr:pool",
        "b's host veth still says it is the pool's"
    );
    assert!(
        index_before.contains(&(taken.clone(), index)),
        "b's host veth was made again, not handed over\n{}",
        k.log_text()
    );
    assert!(
        common::host_links(&kuryr::names::container_veth(&taken)).is_empty(),
        "b's container end is still on the host"
    );
    let ip_b = rb["ips"][0]["address"].as_str().unwrap();
    let ip_b = ip_b.split('/').next().unwrap().to_string();
    assert!(pings(&a, &ip_b), "a cannot reach b\n{}", k.log_text());

    for (ctr, ns) in [(&ca, &a), (&cb, &b)] {
        let (code, v) = cni(&env("DEL", ctr, &ns.path()), &c);
        assert_eq!((code, &v), (0, &Value::Null), "DEL");
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    k.stop();
    remove_with_pool_veths(net).await;
}
