//! `kuryr gc` against the real Neutron and dockerd, on what a kuryr killed mid-lifecycle
//! leaves: a bound, tagged port and its veth that Docker never heard of. Alone in its
//! binary: gc looks at the whole host.

mod common;

use common::cnm::hexid;
use common::Kuryr;
use kuryr::neutron::{Network, Port};
use serde_json::json;

#[tokio::test]
async fn gc_finds_and_removes_what_a_killed_kuryr_left() {
    common::require_docker();
    let n = common::neutron().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("k.sock");
    let mut k = Kuryr::at(sock).start();
    let conf = std::fs::read_to_string(k.dir.path().join("kuryr.conf")).unwrap();
    let (net_id, ep_id) = (hexid(), hexid());
    let ok = |r: (u16, serde_json::Value)| {
        assert_eq!(r.0, 200, "{}", r.1);
        r.1
    };
    let pool = ok(k.call("IpamDriver.RequestPool", &json!({"Pool": "10.35.0.0/24"})));
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    ok(k.call("NetworkDriver.CreateNetwork", &json!({"NetworkID": net_id, "IPv4Data": [{"Pool": "10.35.0.0/24", "Gateway": "10.35.0.1/24"}], "IPv6Data": []})));
    let a = ok(k.call("IpamDriver.RequestAddress", &json!({"PoolID": pool_id, "Options": {"com.docker.network.endpoint.macaddress": "02:42:0a:23:00:09"}})));
    ok(k.call("NetworkDriver.CreateEndpoint", &json!({"NetworkID": net_id, "EndpointID": ep_id, "Interface": {"Address": a["Address"], "MacAddress": "02:42:0a:23:00:09"}})));
    // SIGKILL: no chance to clean up.
    k.child.kill().unwrap();
    let _ = k.child.wait();
    let ports: Vec<Port> = n
        .list(&kuryr::neutron::Filters::new().tags(&kuryr::names::id_tags(&ep_id)))
        .await
        .unwrap();
    assert_eq!(ports.len(), 1);
    let port = ports[0].clone();
    let tap = kuryr::names::host_veth(&port.id);
    assert_eq!(common::host_links(&tap).len(), 1);

    let gc = |extra: &[&str]| common::kuryr_gc(&conf, extra);
    let report = gc(&[]);
    assert!(report.contains(&format!("port {}", port.id)), "{report}");
    assert!(
        report.contains(&format!("host interface {tap}")),
        "{report}"
    );
    assert!(report.contains("network "), "{report}");
    // Without --apply nothing changes.
    assert!(n.get::<Port>(&port.id).await.is_ok());
    let applied = gc(&["--apply"]);
    assert!(applied.contains("removed"), "{applied}");
    assert!(n.get::<Port>(&port.id).await.unwrap_err().is_not_found());
    assert!(common::host_links(&tap).is_empty());
    let nets: Vec<Network> = n
        .list(&kuryr::neutron::Filters::new().tags(&kuryr::names::id_tags(&net_id)))
        .await
        .unwrap();
    assert!(nets.is_empty(), "the network Docker never knew is gone");
    // The pool lost its subnet with the network: the next pass takes it.
    let again = gc(&["--apply"]);
    assert!(again.contains(&format!("subnetpool {pool_id}")), "{again}");
    assert!(gc(&[]).contains("nothing to collect"));
}
