//! `kuryr gc` and `reconcile_on_start` against the real Neutron and dockerd, on what a
//! kuryr killed mid-lifecycle leaves: a bound, tagged port and its veth that Docker never
//! heard of. Alone in their binary, one at a time: gc looks at the whole host.

mod common;

use common::cnm::hexid;
use common::Kuryr;
use kuryr::neutron::{Network, Port, SubnetPool};
use serde_json::json;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A kuryr that made a network and an endpoint Docker never heard of, then was killed
/// (SIGKILL: no chance to clean up). Its socket (in a directory that goes when the test
/// drops it), config, the Docker ids, the pool, the endpoint's port and its host veth.
async fn killed_kuryr_leaves(
    n: &kuryr::neutron::Neutron,
    cidr_prefix: &str,
) -> (
    (tempfile::TempDir, std::path::PathBuf),
    String,
    String,
    String,
    Port,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("k.sock");
    let mut k = Kuryr::at(sock.clone()).start();
    let conf = std::fs::read_to_string(k.dir.path().join("kuryr.conf")).unwrap();
    let (net_id, ep_id) = (hexid(), hexid());
    let cidr = format!("{cidr_prefix}.0/24");
    let ok = |r: (u16, serde_json::Value)| {
        assert_eq!(r.0, 200, "{}", r.1);
        r.1
    };
    let pool = ok(k.call("IpamDriver.RequestPool", &json!({"Pool": cidr})));
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    ok(k.call("NetworkDriver.CreateNetwork", &json!({"NetworkID": net_id, "IPv4Data": [{"Pool": cidr, "Gateway": format!("{cidr_prefix}.1/24")}], "IPv6Data": []})));
    let a = ok(k.call(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Options": {"com.docker.network.endpoint.macaddress": "02:42:0a:23:00:09"}}),
    ));
    ok(k.call(
        "NetworkDriver.CreateEndpoint",
        &json!({"NetworkID": net_id, "EndpointID": ep_id, "Interface": {"Address": a["Address"], "MacAddress": "02:42:0a:23:00:09"}}),
    ));
    // A chosen MAC: the endpoint's tags are on its port before CreateEndpoint answers.
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
    ((dir, sock), conf, net_id, pool_id, port, tap)
}

#[tokio::test]
async fn gc_finds_and_removes_what_a_killed_kuryr_left() {
    let _one = ONE_AT_A_TIME.lock().await;
    common::require_docker();
    let n = common::neutron().await;
    let (_sock_dir, conf, net_id, pool_id, port, tap) = killed_kuryr_leaves(&n, "10.35.0").await;

    if common::on_ovn() {
        // On OVN the veth is also a port of br-int, which outlives the device: delete
        // the device alone (a crash between the two deletes); gc still finds the port.
        assert!(common::ovn_bridge_ports().contains(&tap));
        common::ip(&["link", "del", &tap]);
    }
    let gc = |extra: &[&str]| common::kuryr_gc(&conf, extra);
    let report = gc(&[]);
    assert!(report.contains(&format!("port {}", port.id)), "{report}");
    assert!(
        report.contains(&format!("host interface {tap}")),
        "{report}"
    );
    assert!(report.contains("network "), "{report}");
    // The network's pool goes in the same pass: its only subnet goes with the network.
    assert!(
        report.contains(&format!("subnetpool {pool_id}")),
        "{report}"
    );
    // Without --apply nothing changes.
    assert!(n.get::<Port>(&port.id).await.is_ok());
    let applied = gc(&["--apply"]);
    assert!(applied.contains("removed"), "{applied}");
    assert!(n.get::<Port>(&port.id).await.unwrap_err().is_not_found());
    assert!(common::host_links(&tap).is_empty());
    assert!(
        !common::ovn_bridge_ports().contains(&tap),
        "{tap} left on br-int"
    );
    let nets: Vec<Network> = n
        .list(&kuryr::neutron::Filters::new().tags(&kuryr::names::id_tags(&net_id)))
        .await
        .unwrap();
    assert!(nets.is_empty(), "the network Docker never knew is gone");
    assert!(n
        .get::<SubnetPool>(&pool_id)
        .await
        .unwrap_err()
        .is_not_found());
    // One pass left nothing.
    let again = gc(&[]);
    assert!(again.contains("nothing to collect"), "{again}");
}

/// `reconcile_on_start`: the next kuryr removes the leak at start, in the background, once
/// it is older than `reconcile_grace_seconds`; a younger one (Docker may be creating it)
/// is left alone.
#[tokio::test]
async fn reconcile_on_start_removes_what_a_killed_kuryr_left() {
    let _one = ONE_AT_A_TIME.lock().await;
    common::require_docker();
    let n = common::neutron().await;
    let ((_dir, sock), _conf, net_id, pool_id, port, tap) =
        killed_kuryr_leaves(&n, "10.35.1").await;
    let reconciled = |k: &Kuryr| {
        common::wait_until(60, || {
            let log = k.log_text();
            (log.contains("reconcile: nothing leaked") || log.contains("reconcile: removing"))
                .then_some(log)
        })
        .expect("reconcile never ran")
    };
    // Within the default grace period (600 s): left alone.
    let young = Kuryr::at(sock.clone())
        .extra("reconcile_on_start = true\n")
        .start();
    let log = reconciled(&young);
    assert!(!log.contains(port.id.as_str()), "{log}");
    assert!(n.get::<Port>(&port.id).await.is_ok());
    assert_eq!(common::host_links(&tap).len(), 1);
    drop(young);
    // Past it: port, veth, network and the network's pool go, in its one pass.
    let k = Kuryr::at(sock)
        .extra("reconcile_on_start = true\nreconcile_grace_seconds = 0\n")
        .start();
    let log = reconciled(&k);
    assert!(log.contains(port.id.as_str()), "{log}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let nets: Vec<Network> = n
            .list(&kuryr::neutron::Filters::new().tags(&kuryr::names::id_tags(&net_id)))
            .await
            .unwrap();
        let pool_gone = n
            .get::<SubnetPool>(&pool_id)
            .await
            .is_err_and(|e| e.is_not_found());
        if common::host_links(&tap).is_empty() && nets.is_empty() && pool_gone {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not removed: {}",
            k.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(n.get::<Port>(&port.id).await.unwrap_err().is_not_found());
}
